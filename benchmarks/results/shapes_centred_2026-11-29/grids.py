"""Converts a sweep's OUT/params/*.msgpack into one compressed npz of uint8 density grids (d * 8, capped 255)
on evaluate's grid (EVAL_BOUND, RESOLUTION), plus albedo-free: only density. Usage: grids.py SWEEP_OUT DEST.npz"""
import glob, os, sys
import jax, numpy as np
from flax import serialization
sys.path.insert(0, os.getcwd())
from configs import default
from dreamfusion_jax import evaluate as ev, train
from dreamfusion_jax.field import Scene
src, dest = sys.argv[1], sys.argv[2]
cfg = default.get_config()
scene = train.make_scene(cfg)
field = jax.jit(lambda p, x: scene.apply({"params": p}, x, method=Scene.field))
out = {}
for path in sorted(glob.glob(os.path.join(src, "params", "*.msgpack"))):
  with open(path, "rb") as f:
    p = serialization.msgpack_restore(f.read())
  d = np.nan_to_num(ev.density_values(lambda x: field(p, x)[0], ev.EVAL_BOUND, ev.RESOLUTION), nan=0.0)
  out[os.path.basename(path)[:-len(".msgpack")]] = np.minimum(np.round(d * 8.0), 255).astype(np.uint8)
np.savez_compressed(dest, **out)
print(dest, len(out), os.path.getsize(dest) / 1e6, "MB")
