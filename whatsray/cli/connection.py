"""Where the commands that call a running whatsray's admin API (`whatsray status`, `whatsray mcp`)
find its URL and token.

URL: the flag, else `WHATSRAY_MCP_API_URL` (default http://127.0.0.1:8000). Token: the flag,
else `WHATSRAY_ADMIN_TOKEN`, else, in local mode, the one `whatsray local` generated in the data
directory. With both flags the settings are not read at all.
"""

from __future__ import annotations

from whatsray.settings import LocalSecrets, Settings, SettingsError, load_settings

__all__ = ["admin_api", "admin_token"]


def admin_token(given: str | None, settings: Settings) -> str:
    """The admin token; `SettingsError` says where to put one when there is none."""
    if given:
        return given
    if settings.admin_token is not None:
        return settings.admin_token.get_secret_value()
    local = LocalSecrets(settings.data_dir)
    if settings.mode == "local" and local.path.exists():  # what `whatsray local` generated
        return local.load_or_create()["admin_token"]
    raise SettingsError(
        "no admin token: set WHATSRAY_ADMIN_TOKEN or pass --token (local mode keeps it in"
        f" {local.path} once `whatsray local` has run)"
    )


def admin_api(url: str | None, token: str | None) -> tuple[str, str]:
    """The admin API's base URL (no trailing slash) and token."""
    if url and token:
        return url.rstrip("/"), token
    settings = load_settings()
    return (url or settings.mcp_api_url).rstrip("/"), admin_token(token, settings)
