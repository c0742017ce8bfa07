"""The NeRF wing: the hash encoding, the field, cameras, the volume renderer and its fixed views.

It imports nothing of the guidance or Shapes wings, nor of the package root.
"""
