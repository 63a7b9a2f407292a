"""Monitor deploy: node exporter on every host; Prometheus and Alertmanager on the
monitoring host, scraping every engine, node exporter, accelerator exporter and
router the inventory names, with the alert rules of files/monitoring/alerts.yaml.

    pyinfra inventories/lab.py deploys/monitor.py --data monitoring=true
    pyinfra INVENTORY deploys/monitor.py --data monitor_host=HOST

The targets, rules and config files are planned once for the whole inventory
before any host is touched (``llmfleet/monitorplan.py``); a host whose plan has a
problem (an SGLang server without ``monitoring: true``, an unknown exporter) fails
alone, naming the setting and the fix.  ``llmfleet top INVENTORY`` reads the result.
"""

from pyinfra import host

from roles import summary
from roles.monitor import node_exporter, prometheus_server
from roles.plan import monitoring

summary.register("llmfleet monitor")
_found = monitoring()
if _found is not None:
    _plan, _me = _found
    node_exporter(_me)
    if host.name == _plan.server.host:
        prometheus_server(_plan)
