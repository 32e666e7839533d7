from tsprune_edge.cli import main

main()
