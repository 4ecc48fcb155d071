from tiffin_rt.cli import main

raise SystemExit(main())
