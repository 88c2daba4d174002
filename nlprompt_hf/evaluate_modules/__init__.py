"""`evaluate` metric modules shipped with nlprompt-hf, loadable offline by path."""
