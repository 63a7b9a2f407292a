"""Pure parsers for what a host says about itself, one module per job.

``framing`` splits the ``=== $ CMD`` framed output every fact prints;
``devices`` reads the accelerator tools (GPUs/NPUs, topology, fabric
manager); ``system`` the OS, kernel, CPU/NUMA, sysctls, memory and disk, and
``parse_basics`` puts them into one ``HostFacts``; ``tuning`` reads the
state the tuning role plans from.

No pyinfra here: every function takes the text a command printed and returns
plain data, so each one is tested byte-for-byte against real captured output
(``tests/fixtures/hosts/``) and the pyinfra facts in ``roles/hostfacts.py``
stay one line of glue.  Parsers are forgiving of a missing tool (empty text,
"command not found") and return ``None``/empty rather than raising, because a
preflight that crashes on the one host it should describe is useless.
"""
