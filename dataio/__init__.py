"""Data and image I/O beside the engine, on host (NumPy) arrays: `files` (atomic writes),
`datasets` (the embedded digits, IDX files, MNIST downloads), `images` (PNG grids) and `plots`
(training curves, latent scatter). It imports nothing of the project; `engine.data` and
`engine.utils` build the tensor-facing API on it."""
