"""Peers: other servers whose models this corral serves by passing their requests on."""
