"""The ``simplebits`` command line (installed as ``simplebits_audit.cli``)."""
