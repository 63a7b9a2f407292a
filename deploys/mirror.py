"""Site Hub mirror on the cache host(s): olah as a systemd service.

    pyinfra inventories/lab.py deploys/mirror.py --limit lab1
    pyinfra INVENTORY deploys/serve.py --data hf_endpoint=http://CACHE_HOST:8090

Settings: ``mirror_port`` (8090), ``mirror_upstream`` (the Hub, or the
``hf_endpoint`` this host would otherwise use), ``mirror_cache_size``, and the
package source keys of the engine role (wheelhouse/index for air-gapped sites).
"""

from pyinfra import host

from llmfleet.engineenv import PackageSource
from llmfleet.settings import Settings
from roles.mirror import hub_mirror
from roles.plan import settings_only


def mirror(s: Settings) -> None:
    address = str(host.data.get("ssh_hostname") or host.name)
    hub_mirror(
        upstream=s.mirror_upstream or s.hf_endpoint or "https://huggingface.co",
        public_netloc=f"{address}:{s.mirror_port}",
        port=s.mirror_port,
        source=PackageSource.from_settings(s),
        cache_size_limit=s.mirror_cache_size,
    )


_settings = settings_only()
if _settings is not None:
    mirror(_settings)
