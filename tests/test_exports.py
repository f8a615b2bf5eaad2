"""The public surface: ``__all__`` is sorted and names exactly what the package exports."""

from __future__ import annotations

import relay_trio


def test_all_is_sorted_and_complete() -> None:
    assert relay_trio.__all__ == sorted(relay_trio.__all__)
    for name in relay_trio.__all__:
        assert hasattr(relay_trio, name), name
    public = {n for n in vars(relay_trio) if not n.startswith("_")}
    modules = {n for n in public if type(getattr(relay_trio, n)).__name__ == "module"}
    assert public - modules == set(relay_trio.__all__)
