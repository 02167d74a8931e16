import { signIn, wire } from "./passkey.js";

wire(document.getElementById("signin"), document.getElementById("status"), signIn);
