"""Records to findings: the labelled suite and a remedy's proof on a diagnosis."""
