"""Side-by-side benchmarks against PyTorch: `python -m benchmarks.run` (or `tensortape bench`)."""
