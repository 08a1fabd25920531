//! The sandbox launcher as a standalone binary (the factory spawns it for each container).

fn main() {
    brisk_sandbox::launcher_main()
}
