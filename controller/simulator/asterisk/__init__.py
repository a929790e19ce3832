"""A simulated Asterisk 22.10.1 for voxgate: AMI, the contract dialplan, AudioSocket and chan_websocket.

FakeAsterisk (fake_asterisk.py) is the entry point; the same caller scripts as the simulated
FreeSWITCH drive its calls (controller.simulator.caller).
"""
