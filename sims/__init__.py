"""Physics and fields: cosmology, initial conditions, particle-mesh N-body, painting,
snapshots and field statistics. Knows nothing about neural networks."""
