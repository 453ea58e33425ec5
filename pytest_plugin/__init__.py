"""mockxero's pytest plugin, installed as ``mockxero_pytest`` and loaded by
pytest through the ``pytest11`` entry point: see :mod:`mockxero_pytest.plugin`."""
