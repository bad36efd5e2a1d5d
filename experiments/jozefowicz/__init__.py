"""The Jozefowicz, Zaremba and Sutskever (ICML 2015) architecture comparison as
a command: `python -m experiments.jozefowicz run|report`.

XLA CPU was seen to wedge on this machine while training populations; the
command restarts itself when that happens (see `watchdog`).
"""
