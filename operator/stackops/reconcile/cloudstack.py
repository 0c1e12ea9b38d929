"""The CloudStack connection of a KvmHost, a XenPool or a SystemVMTemplate, from the Secret its spec references
(`url`, `apiKey`, `secretKey`).

- The `url` must be `https://`: every request carries the API key and a signature, and `addHost` a hypervisor's
  password. A plain `http://` endpoint (a lab) needs the Secret's own consent, the key `allowPlainHTTP` set to
  `"true"`; otherwise nothing is sent and the object is `Stalled` (`InsecureEndpoint`).
- The management server's version is read (the driver keeps it a while) and recorded in status
  (`cloudstackVersion`) when it changed; the driver refuses what that version cannot do
  (`UnsupportedCloudStackVersion`).
"""
from __future__ import annotations

from urllib.parse import urlsplit

from .. import status as st
from ..drivers.cloudstack import CloudStackClient, CloudStackPool
from ..destinations import NOWHERE
from .base import Context, CredentialNotAllowed, ReconcileError

PLAIN_HTTP_KEY = "allowPlainHTTP"


def plain_http_allowed(values: dict) -> bool:
    consent = values.get(PLAIN_HTTP_KEY)
    return consent is not None and consent.get_secret_value().strip().lower() == "true"


def client_for(pool: CloudStackPool, ctx: Context, secret_name: str, *,
               condition: st.ConditionType | None = None) -> CloudStackClient:
    """The pool's client for the Secret's endpoint and keys. A URL that is not https (and not http with the
    Secret's consent) is refused with ReconcileError `InsecureEndpoint` (Stalled; with `condition`, that domain
    condition False too). The message names the Secret and the scheme, never the URL."""
    values = ctx.secrets[secret_name]
    url = values["url"].get_secret_value()
    scheme = urlsplit(url.strip()).scheme.lower()
    if scheme != "https" and not (scheme == "http" and plain_http_allowed(values)):
        shown = "a plain http:// URL" if scheme == "http" else "not an https:// URL"
        message = (f"Secret {ctx.namespace}/{secret_name}: url is {shown}; the API key, request signatures and host "
                   f"passwords would cross the network readable. Use https://, or (a lab) add the key "
                   f'{PLAIN_HTTP_KEY}: "true" to the Secret. Nothing was sent')
        conditions = [st.ConditionState(condition, "False", st.Reason.INSECURE_ENDPOINT, message)] if condition else []
        raise ReconcileError(st.Reason.INSECURE_ENDPOINT, message, retry=False, conditions=conditions)
    destinations = getattr(values, "destinations", NOWHERE)
    if destinations and not destinations.allows_url(url):  # the url is the Secret's own: a list there must hold it
        raise CredentialNotAllowed(ctx.namespace, secret_name, [f"its own url ({scheme}://…)"], "the API keys")
    return pool.get(url, values["apiKey"].get_secret_value(), values["secretKey"])


def endpoint(ctx: Context, secret_name: str) -> dict[str, str]:
    """The CloudStack url of a connection Secret as a destination for `Context.credential` (a host password that
    addHost/addCluster hands to CloudStack), shown by the Secret's name, never by the URL."""
    url = ctx.secrets[secret_name]["url"].get_secret_value().strip()
    return {url: f"the CloudStack url of Secret {ctx.namespace}/{secret_name}"}


async def record_version(client: CloudStackClient, ctx: Context) -> str:
    """The management server's version, written to status (`cloudstackVersion`) at once when it changed, so that
    it is there even when the pass ends Stalled. Raises the driver's CloudStackError when it cannot be read."""
    version = await client.version()
    if version and ctx.status.get("cloudstackVersion") != version:
        try:
            await ctx.checkpoint({"cloudstackVersion": version})
        except Exception as error:  # noqa: BLE001 - informational: the pass goes on; the next one writes it
            ctx.logger.warning("could not record the CloudStack version in status: %s", type(error).__name__)
    return version
