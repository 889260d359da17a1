"""The control loops: reconciler (desired vs actual workers), autoscaler (pure decision), dispatcher of
async tasks, recovery sweeps."""
