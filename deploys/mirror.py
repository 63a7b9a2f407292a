"""Site Hub mirror on the cache host(s): olah as a systemd service.

    pyinfra inventories/lab.py deploys/mirror.py --limit lab1
    pyinfra INVENTORY deploys/serve.py --data hf_endpoint=http://CACHE_HOST:8090

Host data: ``mirror_port`` (8090), ``mirror_upstream`` (the Hub, or the
``hf_endpoint`` this host would otherwise use), ``mirror_cache_size``, and the
package source keys of the engine role (wheelhouse/index for air-gapped sites).
"""

from pyinfra import host

from roles.mirror import hub_mirror
from roles.pyenvs import PackageSource

_data = host.data.dict()
_port = int(_data.get("mirror_port") or 8090)
_address = str(_data.get("ssh_hostname") or host.name)
hub_mirror(
    upstream=str(
        _data.get("mirror_upstream") or _data.get("hf_endpoint") or "https://huggingface.co"
    ),
    public_netloc=f"{_address}:{_port}",
    port=_port,
    source=PackageSource.from_data(_data),
    cache_size_limit=str(_data.get("mirror_cache_size") or "2TB"),
)
