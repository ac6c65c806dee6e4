// Imported first by every entry point that starts bash (the CLI, whose Pulumi engine and provider
// inherit its environment, and the end-to-end tests). bash reads ~/.bashrc, even for `bash -c`,
// when its stdin is a socket (Node's pipes are socketpairs) and SHLVL says it is a top-level shell
// (0 or unset). A slow rc file would then stall every command the project runs: on the build
// machines pyenv's rehash waits up to 60 s for a lock there. SHLVL=1 makes bash skip it.
if (!(Number(process.env.SHLVL) >= 1)) process.env.SHLVL = "1";
