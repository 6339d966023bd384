from datasette_action.cli import main

main()
