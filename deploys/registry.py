"""Site registry on the cache host(s): Debian's docker-registry as a pull-through cache.

    pyinfra inventories/lab_docker.py deploys/registry.py --limit lab1
    pyinfra INVENTORY deploys/serve.py --data image_registry=CACHE_HOST:5000

Settings: ``registry_port`` (5000) and ``registry_upstream`` (the registry it
caches, default Docker Hub).  Hosts name it in ``image_registry`` (and in
``insecure_registries`` when it speaks plain HTTP, as here: put TLS in front
of it for anything beyond a private network).
"""

from roles.plan import settings_only
from roles.registry import site_registry

_settings = settings_only()
if _settings is not None:
    site_registry(port=_settings.registry_port, upstream=_settings.registry_upstream)
