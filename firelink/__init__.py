"""The composition root: the one place that knows every part and wires them (app.py), and the command line (cli.py).

Nothing imports from here except the entry point; every other package stays ignorant of its neighbours above it.
"""
