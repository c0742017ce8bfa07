"""dreamfusion_jax: text-to-3D by Score Distillation Sampling, in JAX/Flax."""

import setuptools

setuptools.setup(
  name="dreamfusion_jax",
  version="0.1.0",
  description="DreamFusion (text-to-3D by Score Distillation Sampling) in JAX/Flax for TPU and GPU.",
  long_description=open("README.md", encoding="utf-8").read(),
  long_description_content_type="text/markdown",
  packages=setuptools.find_packages(include=["dreamfusion_jax", "dreamfusion_jax.*"]),
  package_data={"dreamfusion_jax": ["assets/*", "assets/**/*"]},
  python_requires=">=3.10",
  install_requires=[
    "jax>=0.10.0,<0.13",
    "flax>=0.12.0,<0.14",
    "optax>=0.2.5,<0.4",
    "orbax-checkpoint>=0.11.0,<0.14",
    "ml_collections>=1.0,<2",
    "absl-py>=2.0,<3",
    "numpy>=1.26,<3",
    "safetensors>=0.4,<1",
    "huggingface_hub>=0.30,<3",
    "transformers>=4.40,<6",
    "scikit-image>=0.22,<0.30",
    "trimesh>=4.0,<6",
    "pillow>=10,<14",  # trimesh's texture images.
    "scipy>=1.10,<2",  # The texture's padding (a distance transform).
    "xatlas>=0.0.9,<0.1",  # UV atlases of the exported meshes.
    "fast-simplification>=0.1.7,<0.3",  # Their face budget (quadric decimation).
    "imageio>=2.30,<3",
    "imageio-ffmpeg>=0.5,<1",
    "tensorboardX>=2.6,<3",
    "tqdm>=4.60,<5",
  ],
  extras_require={
    # PyTorch, diffusers and transformers' PyTorch models are the reference in parity tests only.
    # ruff is the tree's one format (pyproject.toml), which CI checks; hypothesis fuzzes the config checks.
    "test": [
      "pytest>=8,<10",
      "torch>=2.4,<2.14",
      "diffusers>=0.30,<0.50",
      "ruff>=0.17,<0.18",
      "hypothesis>=6.100,<7",
    ],
  },
)
