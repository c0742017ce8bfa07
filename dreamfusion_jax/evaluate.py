"""Command line of the Shapes benchmark (dreamfusion_jax.shapes.evaluate), kept at the package root:

python -m dreamfusion_jax.evaluate --workdir=DIR [--classifier_dir=DIR2]
"""

from dreamfusion_jax.shapes import evaluate

if __name__ == "__main__":
  evaluate.run()
