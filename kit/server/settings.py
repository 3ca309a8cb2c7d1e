"""Server settings (flags > environment > defaults) and the exposure check."""

from __future__ import annotations

import ipaddress

from pydantic import BaseModel, ConfigDict, Field

from kit.errors import KitError


class ServerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    host: str = Field("127.0.0.1", description="Bind address; loopback by default so nothing is exposed.")
    port: int = Field(8000, ge=0, le=65535, description="TCP port (0 picks a free one).")
    api_key: str | None = Field(None, description="If set, requests need 'Authorization: Bearer <key>'.")
    max_tokens: int | None = Field(None, ge=1, description="Reply length when a request gives none (default: the "
                                                        "bundle's sampling).")
    cors_origins: list[str] = Field(default_factory=list,
                                    description="Browser origins allowed to call the API (CORS); none by default.")
    max_queue: int = Field(32, ge=0, description="Requests that may wait per persona while one generates; "
                                                 "more get 429 with Retry-After.")
    queue_timeout_s: float = Field(300.0, gt=0, description="A request waiting longer than this gets 503 "
                                                            "with Retry-After.")
    max_body_bytes: int = Field(8 << 20, ge=1024, description="Larger request bodies get 413.")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def check_exposure(settings: ServerSettings, *, insecure: bool) -> None:
    """Binding beyond loopback without an API key lets anyone on the network use the model."""
    if is_loopback(settings.host) or settings.api_key or insecure:
        return
    raise KitError(f"refusing to serve on {settings.host} without an API key (anyone on the network could use it)",
                   where="perskit serve --host", fix="add --api-key KEY (or $PERSKIT_API_KEY), bind 127.0.0.1, "
                                                     "or pass --insecure to serve openly on purpose")
