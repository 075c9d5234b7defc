"""Theory: random-matrix spectra of the score Jacobian, and the statistical physics of memorization."""
