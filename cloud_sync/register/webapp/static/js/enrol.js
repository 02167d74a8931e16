import { enrol, wire } from "./passkey.js";

const button = document.getElementById("enrol");
wire(button, document.getElementById("status"), () => enrol(button.dataset.base));
