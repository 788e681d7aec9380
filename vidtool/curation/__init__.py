"""Curating footage before training: cut long videos into shots (`shots`), measure each clip
(`scores`, `aesthetic`) and keep the clips that pass a condition (`where`, `filtering`).

The stages `vidtool cut-scenes`, `vidtool score` and `vidtool filter` are manifest in, manifest out,
as the other data stages are (`vidtool.data.shards`: sharded, resumable, failures recorded as data).
"""
