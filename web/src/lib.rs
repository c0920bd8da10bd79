//! The Leptos page (client-side rendered, built by trunk): records or uploads a sound, runs the audio front end
//! and the audio encoder in the browser, and shows the images as they arrive. Its issue builds it; until then
//! the crate only holds its place in the workspace.
