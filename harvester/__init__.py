"""pan-harvester: OAI-PMH harvesting of photon & neutron facility metadata.

A record flows through one module per stage::

    config -> http -> oai -> harvest -> store -> records -> techniques -> index
                                                                 cli, daemon
"""

__version__ = "0.1.0"
