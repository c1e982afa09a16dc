# Types of the optional C extension built from _otlpwalk.c (see that file for the shapes).
from collections.abc import Mapping
from typing import Any

def walk_traces(
    body: bytes, kinds: Mapping[str, str], service_key: str, ip_keys: tuple[str, ...], /
) -> list[Any] | None: ...
def walk_logs(
    body: bytes, kinds: Mapping[str, str], service_key: str, event_name_key: str, /
) -> list[Any] | None: ...
def new_object(cls: type[Any], setters: tuple[Any, ...], /, *values: Any) -> Any: ...
