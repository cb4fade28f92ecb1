from consultd.cli import main

main()
