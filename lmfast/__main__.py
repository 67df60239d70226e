from lmfast.cli.app import main

main()
