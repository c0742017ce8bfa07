"""The prior-independent surface: a signed distance rendered as VolSDF's density, its regularisers and schedules.

configs/default.py (the Shapes prior) measured each piece (BENCHMARKS.md, 'Surface quality'); configs/shapes_hq.py
and the Stable Diffusion configs (configs/sd21_base.py) take the same surface with their own final sharpness and
initial sphere. Not a config of its own: `apply` sets these fields on one.
"""


def apply(c, final_beta: float, initial_radius: float):
  """Sets the signed-distance surface on config c, its schedules spanning c.num_steps; returns c."""
  # A signed distance s, not a density: VolSDF's density (1 / beta) Psi_beta(-s) is opaque inside and empty
  # outside, so the object is a surface, not the speckled fog of a free density (normal error 55 deg, fog
  # 0.63 in the Shapes sweep; BENCHMARKS.md, 'Surface quality'). s starts as the sphere |x| - initial_radius,
  # smaller than the objects, so the views keep background around it.
  c.field.density_activation = "volsdf"
  c.field.blob_radius = initial_radius  # The initial sphere's radius (world units).
  c.field.sdf_beta = final_beta  # beta at the end: the surface's blur (world units; 0.005 at 32x32 renders).
  c.sdf.beta_start = 0.05  # beta at step 0: a soft surface whose gradient reaches 5 cm around it ...
  c.sdf.beta_anneal_steps = c.num_steps  # ... sharpened log-linearly over the whole run.
  c.sdf.eikonal = 1000.0  # Keeps s a distance (the SDS loss is a sum over pixels, so weights are large).
  # Flattens the dents SDS's noise leaves in the faces ('a red cube', CPU: normal error 22 -> 16 deg, extent
  # error 0.22 -> 0.13, at 5% of the step's time).
  c.sdf.smoothness = 1000.0
  # ... as the mean LENGTH of the normals' difference (a total variation), not its square: the square costs a
  # sharp edge more than a rounded one, the length does not. Over 5 chairs + 5 shapes x 3 seeds (H100) the other
  # shapes' IoU rose 0.836 -> 0.847, the true genus 20 -> 23 of 30, chamfer 0.0163 -> 0.0152, and the cubes'
  # faces flattened with sharper edges; on the CPU 'a red cube' IoU 0.857 -> 0.888, 'a white cylinder' normal
  # error 12.0 -> 9.9 deg (BENCHMARKS.md, 'Surface quality'). It still rounds edges: trained from the exact cube,
  # the default rounds them to 0.20 of the half-size, and without the term they stay sharp with crumpled faces
  # (benchmarks/results/edges_2026-12-07/); sdf.smoothness_fade_start fades it out late (off until screened).
  c.sdf.smoothness_norm = "l1"
  # Progressive view: the azimuths spread from the front to the full circle over the first 30% of the steps,
  # so the front is settled before the other sides are shaped. Chairs drawn from all sides at once grew
  # tangles of backrests and legs; over 5 chairs x 3 seeds (H100) the chair's IoU rose 0.50 -> 0.57 and its
  # true genus 6 -> 10 of 15, the other 5 shapes' IoU 0.830 -> 0.836 (BENCHMARKS.md, 'Surface quality').
  c.camera.progressive_view_steps = int(0.3 * c.num_steps)
  c.export.mesh_threshold = 0.0  # The mesh (and the Shapes benchmark's occupancy) is the surface s = 0.
  return c
