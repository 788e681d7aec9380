"""Memory budgets without torch: `--max-memory` sizes and the host's share of RAM. `vidtool.memory`
plans models under them; `vidtool.video` refuses reads over them (and must stay cheap to import)."""

from __future__ import annotations

import os
import re

from vidtool.errors import UserError

_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_memory(text: str) -> int | None:
    """'6G', '512M', '1.5g', '800000' (bytes) → bytes; 'auto' → None (ask the device)."""
    if text.strip().lower() == "auto":
        return None
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*", text.lower())
    if not match or float(match[1]) <= 0:
        raise UserError(f"--max-memory takes a size like 6G, 512M or auto, got {text!r}")
    return int(float(match[1]) * _UNITS[match[2]])


def host_budget() -> int:
    """Half of the machine's available RAM: what a stage may use on the host."""
    try:
        with open("/proc/meminfo") as f:
            info = dict(line.split(":", 1) for line in f)
        available = int(info["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    return available // 2


def shown(size: int) -> str:
    """Bytes as people read them: 1.5 GiB, 300 MiB, 12 KiB."""
    for unit, scale in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.3g} {unit}"
    return f"{size} B"
