"""Xiaomi miIO devices and gateways (python-miio 0.5.12, optional extra ``miio``).

Only ``drivers.miio.driver`` (and what it imports) may import ``miio``: the hub imports it lazily through the driver
registry, so a hub without ``[drivers.miio]`` never loads python-miio. The packet codec, the value decoders and the
simulator here are pure Python and stand on their own.
"""
