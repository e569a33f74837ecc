// Starts Swagger UI on /docs. A file of its own, not an inline script, so that the page's
// Content-Security-Policy needs no 'unsafe-inline' for scripts.
window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  showExtensions: true,
  validatorUrl: null, // no badge: it would send the document to validator.swagger.io
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
});
