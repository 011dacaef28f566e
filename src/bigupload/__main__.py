from bigupload.cli import main

main()
