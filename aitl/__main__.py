from aitl.cli import main

main()
