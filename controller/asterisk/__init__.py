"""Asterisk: AMI call control, AudioSocket and chan_websocket media."""
