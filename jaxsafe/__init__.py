"""jaxsafe: progressive safeguards for safe RL as automata stepped inside jit."""
