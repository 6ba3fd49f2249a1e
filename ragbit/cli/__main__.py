"""`python -m ragbit.cli ...` runs the same CLI as the `ragbit` console script."""
from ragbit.cli import main

main()
