"""Reliability: the monitor never breaks training, no run is lost, every file opens or says why,
every bad command-line input gets exit 2 and one line, and untrusted names stay inert."""
