"""The Jozefowicz, Zaremba and Sutskever (ICML 2015) architecture comparison as
a command: `python -m experiments.jozefowicz run|search|report`.
"""
