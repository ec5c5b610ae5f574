from __future__ import annotations

import yaml

from ansible_collections.vermagic.kmod.plugins.doc_fragments._attributes import ModuleDocFragment


def test_fragments_are_valid_yaml_with_attributes():
    for name in ("DOCUMENTATION", "INFO_MODULE", "FACTS", "FACTS_MODULE"):
        doc = yaml.safe_load(getattr(ModuleDocFragment, name))
        assert doc["attributes"], name
