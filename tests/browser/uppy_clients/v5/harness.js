// @uppy/aws-s3 5.x as its users configure it: `endpoint` (the Companion-compatible server) and
// `headers` sent with every request to it (here a bearer API key).
import AwsS3 from '@uppy/aws-s3'
import awsS3Package from '@uppy/aws-s3/package.json'
import Uppy from '@uppy/core'
import corePackage from '@uppy/core/package.json'
import { installHarness } from '../harness-common.js'

installHarness({
  generation: 5,
  versions: { core: corePackage.version, awsS3: awsS3Package.version },
  Uppy,
  AwsS3,
  pluginOptions: ({ endpoint, apiKey }) => ({
    endpoint,
    headers: apiKey ? { Authorization: `Bearer ${apiKey}` } : {},
  }),
})
