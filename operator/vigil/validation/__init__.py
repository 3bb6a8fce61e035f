"""Validation of a candidate before it sees traffic: golden-set replay (:mod:`.golden`)."""
