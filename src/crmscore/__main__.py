from crmscore.cli import main

main()
