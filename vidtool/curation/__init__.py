"""Curating footage before training: cut long videos into shots (`shots`), measure each clip
(`scores`, `aesthetic`) and keep the clips that pass a condition (`where`, `filtering`).

The stages `vidtool cut-scenes`, `vidtool score` and `vidtool filter` are manifest in, manifest out,
as the other data stages are (`vidtool.data.shards`: sharded, resumable, failures recorded as data).
"""


def require_extra(stage: str, *modules: str) -> None:
    """One line, before any work, when the `curate` extra's libraries are not installed."""
    import importlib.util

    from vidtool.errors import UserError

    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if missing:
        raise UserError(f"{stage} needs {', '.join(missing)}, which is not installed: pip install 'vidtool[curate]' "
                        "(from a checkout: pip install -e '.[curate]')")
