"""Using a trained run: ``mtrl.load``, exports, ``mtrl eval`` and videos. Nothing here imports the
training loop."""
