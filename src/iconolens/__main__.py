from iconolens.cli import main

main()
