"""The live web console: views of the topics (``views``), the server that pushes their deltas (``server``)."""
